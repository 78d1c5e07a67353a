"""``dsp events``: move the event streams into Parquet files.

    dsp events sink --redis-url redis://127.0.0.1:6379/0 --events events/ [--drain]

``sink`` joins the consumer group ``sink`` on every shard stream (``dsp:ev:{00}`` …) as one
consumer (``--consumer``, default the host name: a restarted sink on the same host resumes its
own unacknowledged batch first). It writes hourly-partitioned Parquet under ``--events`` (layout
in docs/events.md) and acknowledges a batch only after its files are fsynced and renamed.
``--drain`` processes what is there and exits 0 (at once, writing nothing, when the streams are
empty); without it the sink runs until SIGTERM/SIGINT, finishing the batch in hand.
``--metrics-port`` serves its Prometheus metrics (lag, throughput, files) on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="events_command", metavar="SUBCOMMAND")
    sink = sub.add_parser("sink", help="write the event streams to hourly Parquet files")
    sink.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    sink.add_argument("--redis-cluster", action="store_true")
    sink.add_argument("--events", required=True, help="output directory (Parquet partitions)")
    sink.add_argument("--drain", action="store_true", help="process what is there, then exit 0")
    sink.add_argument("--consumer", default=socket.gethostname(),
                      help="consumer name in the group (default: the host name)")
    sink.add_argument("--shards", type=int, default=16, help="stream shards to read (default 16)")
    sink.add_argument("--count", type=int, default=64,
                      help="stream entries per batch (each up to 512 events; default 64)")
    sink.add_argument("--claim-idle-s", type=float, default=60.0,
                      help="take over other consumers' batches pending this long (default 60)")
    sink.add_argument("--metrics-port", type=int, default=0,
                      help="serve Prometheus metrics on 127.0.0.1:PORT (0: off)")
    sink.set_defaults(func=run_sink)

    def usage(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=usage)


def run_sink(args: argparse.Namespace) -> int:
    from prometheus_client import start_http_server

    from dsp.events.reader import StreamReader
    from dsp.features.connect import RedisError, sync_client
    from dsp.observability.metrics import SinkMetrics
    from dsp.offline.eventlog.sink import EventSink

    if args.count < 1 or args.shards < 1:
        print("dsp events sink: --count and --shards must be positive", file=sys.stderr)
        return 2
    client = sync_client(args.redis_url, cluster=args.redis_cluster, timeout_s=30.0)
    metrics = SinkMetrics()
    if args.metrics_port:
        start_http_server(args.metrics_port, addr="127.0.0.1", registry=metrics.registry)
    reader = StreamReader(client, args.consumer, count=args.count,
                          claim_idle_ms=int(args.claim_idle_s * 1000))
    sink = EventSink(reader, Path(args.events), shards=args.shards, metrics=metrics)
    stop = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        totals = sink.run(drain=args.drain, should_stop=lambda: stop)
    except RedisError as exc:
        print(f"dsp events sink: redis: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(f"dsp events sink: {totals.entries} entries, {totals.events} events, "
          f"{totals.duplicates} duplicates skipped, {len(totals.files)} files, {totals.bytes} bytes",
          file=sys.stderr)
    return 0
