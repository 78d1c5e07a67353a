"""``dsp console``: the campaign console in the browser (its own process and port).

    dsp console --port 8090 [--host 127.0.0.1] [--redis-url URL] [--events DIR] [--configs DIR]
                [--proposals DIR] [--bidder-metrics http://127.0.0.1:8080/metrics]

Loopback by default. Bound to any other address it needs ``DSP_CONSOLE_TOKEN`` (refuses to start
without one); the browser passes it once as ``?token=...``. Prints its URL when it is listening.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from dsp.cli.config import DEFAULT_CONFIGS


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"),
                        help="the bidder's Redis (live committed spend)")
    parser.add_argument("--events", default=os.environ.get("DSP_EVENTS_DIR", "events"),
                        help="event-log directory (Parquet files of dsp events sink)")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS)
    parser.add_argument("--proposals", default=None,
                        help="folder of proposed config trees for the forecast view")
    parser.add_argument("--bidder-metrics", default=None,
                        help="the bidder's /metrics URL (live pacing λ and brake state)")
    parser.add_argument("--models", default=os.environ.get("DSP_MODELS", "models"))
    parser.add_argument("--data-dir", default=None, help="datasets root (fair-lending reference)")
    parser.set_defaults(func=run)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    from dsp.console.app import ConsoleSettings, build_console, serve
    from dsp.errors import ConfigInvalid

    token = os.environ.get("DSP_CONSOLE_TOKEN") or None
    if not is_loopback(args.host) and not token:
        print(f"dsp console: refusing to listen on {args.host} without DSP_CONSOLE_TOKEN "
              f"(only loopback may go without a credential)", file=sys.stderr)
        return 2
    settings = ConsoleSettings(configs=args.configs, events=args.events, redis_url=args.redis_url,
                               proposals=args.proposals, bidder_metrics_url=args.bidder_metrics,
                               models=args.models, data_dir=args.data_dir, token=token)
    try:
        app = build_console(settings)
    except ConfigInvalid as exc:
        print(f"dsp console: {args.configs} is invalid:\n{exc}", file=sys.stderr)
        return 2
    shown = f"[{args.host}]" if ":" in args.host else args.host
    suffix = "?token=<DSP_CONSOLE_TOKEN>" if token else ""

    def announce() -> None:
        print(f"dsp console: http://{shown}:{args.port}/{suffix}", flush=True)

    serve(app, args.host, args.port, announce)
    return 0
