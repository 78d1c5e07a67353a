"""One command for a headless Locust run against a local bidder, with CSV and HTML reports.

    loadtest/locust-local                       # 60 s, 50 users, bidder with 1 process
    loadtest/locust-local -t 5m -u 200 --bidder-workers 2 --locust-processes 2
    loadtest/locust-local --host http://10.0.0.5:8080 --ids-file ids.jsonl   # an existing bidder

Unless ``--host`` is given it starts a throwaway redis-server, seeds ``--seed-users`` users
(``dsp features seed``), starts ``dsp serve`` on a free port, waits for ``/readyz``, runs
``locust --headless`` with ``loadtest/locustfile.py``, and stops everything. Reports go to
``loadtest/reports/<UTC time>/`` (``locust_stats.csv``, ``locust_stats_history.csv``,
``locust_failures.csv``, ``locust_exceptions.csv``, ``report.html``, ``final.json``). Exit code:
Locust's (non-zero when any request failed).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from dsp.testing.redis_server import RedisServer
from loadtest.capacity import PY, REPO, server
from loadtest.seed import seed_users

LOCUST = Path(PY).parent / "locust"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="loadtest/locust-local", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-t", "--run-time", default="60s")
    p.add_argument("-u", "--users", type=int, default=50, help="concurrent Locust users")
    p.add_argument("-r", "--spawn-rate", type=float, default=25.0)
    p.add_argument("--locust-processes", type=int, default=1, help="locust --processes (forked workers)")
    p.add_argument("--host", default=None, help="an already running bidder; skip starting one")
    p.add_argument("--ids-file", default=os.environ.get("DSP_IDS_FILE"))
    p.add_argument("--seed-users", type=int, default=20000)
    p.add_argument("--bidder-workers", type=int, default=1)
    p.add_argument("--configs", type=Path, default=REPO / "bidder_configs")
    p.add_argument("--out", type=Path, default=None, help="report directory")
    args, extra = p.parse_known_args(argv)  # anything else goes to locust as is
    out = args.out or REPO / "loadtest" / "reports" / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        host, ids_file = args.host, args.ids_file
        if host is None:
            redis_url = stack.enter_context(RedisServer()).url
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dsp-locust-")))
            ids_file = str(tmp / "ids.jsonl")
            how = seed_users(redis_url, args.seed_users, 7, ids_file)
            print(f"seeded {args.seed_users:,} users ({how}) into {redis_url}", file=sys.stderr)
            cmd = ("{python} -m dsp.cli serve --host 127.0.0.1 --port {port} --workers {workers} "
                   "--admin-port {admin_port} "
                   "--redis-url {redis_url} --configs {configs}")
            host, _pid = stack.enter_context(server(cmd, "/readyz", set(os.sched_getaffinity(0)), {
                "redis_url": redis_url, "configs": str(args.configs), "workers": str(args.bidder_workers)}))
            print(f"bidder ready at {host} ({args.bidder_workers} worker(s))", file=sys.stderr)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        if ids_file:
            env["DSP_IDS_FILE"] = ids_file
        argv_locust = [str(LOCUST), "-f", str(REPO / "loadtest" / "locustfile.py"), "--host", host,
                       "--headless", "-u", str(args.users), "-r", str(args.spawn_rate), "-t", args.run_time,
                       "--csv", str(out / "locust"), "--csv-full-history", "--html", str(out / "report.html"),
                       "--json-file", str(out / "final"), "--stop-timeout", "5"]
        if args.locust_processes > 1:
            argv_locust += ["--processes", str(args.locust_processes)]
        argv_locust += extra
        print(" ".join(argv_locust), file=sys.stderr, flush=True)
        code = subprocess.run(argv_locust, cwd=out, env=env).returncode
    _summary(out / "final.json")
    print(f"reports in {out}", file=sys.stderr)
    return code


def _summary(final: Path) -> None:
    """One line from Locust's final stats: requests, failures, bids, notices."""
    if not final.exists():
        return
    entries = json.loads(final.read_text())
    total = sum(e["num_requests"] for e in entries)
    failures = sum(e["num_failures"] for e in entries)
    bid_req = sum(e["num_requests"] for e in entries if e["name"].startswith("/bid/"))
    bids = sum(e["num_requests"] for e in entries if e["name"].endswith("[bid]"))
    notices = {e["name"].rsplit("/", 1)[-1]: e["num_requests"] for e in entries
               if e["name"].startswith("/notice/")}
    print(f"summary: {total:,} requests, {failures:,} failures; {bid_req:,} bid requests, {bids:,} with "
          f"bids ({bids / max(bid_req, 1):.1%}); notices {notices}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
