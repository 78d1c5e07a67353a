"""``dsp traffic``: refresh the invalid-traffic data files from a file or URL; check a request.

    dsp traffic refresh bots --source https://.../crawler-user-agents.json [--configs DIR]
    dsp traffic refresh datacenters --source ./datacenters.csv [--configs DIR]
    dsp traffic check --ua "Mozilla/5.0 ..." --ip 3.0.4.5 [--configs DIR]

``refresh`` reads the source (a local path, or an http(s) URL fetched with a 30 s timeout and a
64 MiB cap), parses it exactly as the bidder will (bot patterns compile, every range line
parses), refuses a result with fewer than ``--min`` entries (a truncated download must not wipe
the list), then replaces the file named in ``traffic.yaml`` atomically. Running bidders pick the
change up with their next config check (every few seconds), as they do for YAML edits.

Sources: for ``bots``, the crawler-user-agents JSON (a list of ``{"pattern": ...}``) or one
pattern per line; for ``datacenters``, ipcat's ``start,end,name,url`` CSV or one CIDR per line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

DEFAULT_CONFIGS = os.environ.get("DSP_CONFIGS", "bidder_configs")
MAX_SOURCE_BYTES = 64 << 20


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    r = sub.add_parser("refresh", help="replace a data file from a file or URL (validated first)")
    r.add_argument("kind", choices=("bots", "datacenters"))
    r.add_argument("--source", required=True, help="local path or http(s) URL")
    r.add_argument("--configs", default=DEFAULT_CONFIGS)
    r.add_argument("--min", type=int, default=100, help="refuse a source with fewer entries")
    r.set_defaults(func=_refresh)
    c = sub.add_parser("check", help="what the traffic filters say about a user agent and IP")
    c.add_argument("--ua", default="")
    c.add_argument("--ip", default="")
    c.add_argument("--configs", default=DEFAULT_CONFIGS)
    c.set_defaults(func=_check)


def read_source(source: str) -> bytes:
    """The bytes of a path or URL, at most :data:`MAX_SOURCE_BYTES`. Raises OSError/ValueError."""
    if source.startswith(("http://", "https://")):
        import urllib.request

        with urllib.request.urlopen(source, timeout=30) as resp:
            data: bytes = resp.read(MAX_SOURCE_BYTES + 1)
    else:
        with open(source, "rb") as fh:
            data = fh.read(MAX_SOURCE_BYTES + 1)
    if len(data) > MAX_SOURCE_BYTES:
        raise ValueError(f"source larger than {MAX_SOURCE_BYTES} bytes")
    return data


def bot_patterns(data: bytes) -> list[str]:
    """Patterns from crawler-user-agents JSON or from text lines."""
    text = data.decode("utf-8")
    if text.lstrip().startswith("["):
        return [str(item["pattern"]) for item in json.loads(text) if item.get("pattern")]
    from dsp.config.traffic import read_patterns

    return read_patterns(text)


def _render(kind: str, source: str, data: bytes) -> tuple[str, int]:
    """The new file's text and its entry count. Raises ValueError when it does not parse."""
    import re

    from dsp.traffic.bots import BotMatcher
    from dsp.traffic.iprange import IpRanges, RangeProblem

    if kind == "bots":
        try:
            patterns = bot_patterns(data)
            BotMatcher.from_patterns(patterns)
        except (ValueError, KeyError, TypeError, AttributeError, re.error) as exc:
            raise ValueError(f"not a bot pattern list: {exc}") from None
        header = (f"# Known bots and crawlers: one user-agent pattern (a regular expression) per line.\n"
                  f"# Refreshed from {source} by `dsp traffic refresh bots`.\n")
        return header + "".join(p + "\n" for p in patterns), len(patterns)
    lines = data.decode("utf-8").splitlines()
    try:
        ranges = IpRanges.from_lines(lines)
    except RangeProblem as exc:
        raise ValueError(str(exc)) from None
    body = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    header = (f"# Data-centre ranges: start,end[,name[,url]] or CIDR[,name] per line.\n"
              f"# Refreshed from {source} by `dsp traffic refresh datacenters`.\n")
    return header + "".join(ln + "\n" for ln in body), len(ranges)


def _target(configs: Path, kind: str) -> Path | None:
    from dsp.config.loader import convert_collecting, read_yaml
    from dsp.config.schema import TrafficFile
    from dsp.errors import ConfigProblem

    problems: list[ConfigProblem] = []
    cfg = convert_collecting(read_yaml(configs / "traffic.yaml", problems) or {}, TrafficFile,
                             str(configs / "traffic.yaml"), problems)
    if cfg is None:
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return None
    rel = cfg.bot_user_agents if kind == "bots" else cfg.datacenter_ranges
    if rel is None:
        print(f"traffic.yaml names no {kind} file", file=sys.stderr)
        return None
    return configs / rel


def _refresh(args: argparse.Namespace) -> int:
    target = _target(Path(args.configs), args.kind)
    if target is None:
        return 2
    try:
        text, count = _render(args.kind, args.source, read_source(args.source))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        print(f"refresh refused, {target} unchanged: {exc}", file=sys.stderr)
        return 1
    if count < args.min:
        print(f"refresh refused, {target} unchanged: {count} entries < --min {args.min}", file=sys.stderr)
        return 1
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, target)
    print(f"{target}: {count} {args.kind} entries from {args.source}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from dsp.config.snapshot import load_snapshot
    from dsp.errors import ConfigInvalid
    from dsp.traffic.iprange import non_public, parse_ip

    try:
        rules = load_snapshot(Path(args.configs)).traffic
    except ConfigInvalid as exc:
        for p in exc.problems:
            print(f"  {p}", file=sys.stderr)
        return 2
    ip = parse_ip(args.ip)
    print(f"user agent: {rules.bots.match(args.ua) or 'not a known bot'}")
    print(f"ip: {non_public(ip) or rules.datacenters.lookup(ip) or ('public' if ip else 'not an address')}")
    return 0
