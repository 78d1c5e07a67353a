"""Open-loop load generator: a fixed arrival rate, latency measured from the *scheduled* send time.

Closed-loop tools (wrk, Locust) wait for a response before sending the next request, so when the
server stalls they stop sending and the stall never shows in the percentiles (coordinated
omission). Here request ``i`` is due at ``t0 + i / rate`` whatever happens; its latency is
``response received - due time``, so queueing inside the generator (no free connection) and the
generator's own lateness are charged to the latency too, which can only make results worse, never
better. ``send_lag`` percentiles say how late the generator itself sent: when its p99 exceeds a
millisecond the run is flagged ``client_late`` (the generator's CPU was busy — itself or a
neighbour — so the latencies are pessimistic).

The client is a raw ``asyncio.Protocol`` on uvloop speaking HTTP/1.1 keep-alive (no pipelining),
with a pool of persistent connections (``--connections``, grown up to ``--max-connections`` when
all are busy). Requests come from :mod:`dsp.testing.traffic` (fresh ids, known/unknown users).
A request unanswered after ``--timeout-ms`` counts as a timeout and its connection is dropped.

Notices flow back as an exchange would send them (``--win-share``, ``--bill-share``,
``--loss-notices``, ``--clear-ratio``; the same rules as the Locust scenarios,
:func:`loadtest.scenarios.notices_for`): each bid wins with ``win-share`` and then its ``nurl``
(and, with ``bill-share``, its ``burl``) is fetched with ``${AUCTION_PRICE}`` = bid × clear ratio;
a lost bid's ``lurl`` is fetched. Notices go over their own connection pool, are not part of the
bid latency, and are counted (``notices``, ``notice_errors``, ``notices_per_bid``); they cost the
bidder CPU like real ones, and they commit spend, so budgets and pacing see real traffic.

    python -m loadtest.openloop --url http://127.0.0.1:8080 --rate 2000 --duration 10 \\
        --exchanges openx,magnite --ids-file /tmp/ids.jsonl --cpu 0 --json

Pin it to a core the server does not use (``--cpu``): on a small machine the generator and the
server otherwise fight for the same CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import numpy as np

from dsp.testing.traffic import TrafficGenerator, TrafficMix
from loadtest.scenarios import LoadSettings, notices_for

_CRLF2 = b"\r\n\r\n"


@dataclass
class Stats:
    """Raw per-run results; latencies in microseconds from the due time."""

    latencies_us: list[int] = field(default_factory=list)
    send_lag_us: list[int] = field(default_factory=list)
    status: collections.Counter[int] = field(default_factory=collections.Counter)
    errors: int = 0
    timeouts: int = 0
    sent: int = 0
    total_responses: int = 0  # including the warm-up: CPU per request divides by this
    bids: int = 0  # measured responses carrying at least one bid (a 200 may be a no-bid with nbr)
    connections_opened: int = 0
    bodies: list[bytes] = field(default_factory=list)  # a few 200 bodies, for inspection
    notices: collections.Counter[str] = field(default_factory=collections.Counter)  # kind -> sent
    notice_status: collections.Counter[int] = field(default_factory=collections.Counter)
    notice_errors: int = 0
    bids_seen: int = 0  # bids (not responses) in every 200, warm-up included: notices per bid


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection with at most one request in flight."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.due_ns = 0
        self.busy = False
        self.measured = False
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, data: bytes, due_ns: int, measured: bool) -> None:
        assert self.transport is not None
        self.busy = True
        self.measured = measured
        self.due_ns = due_ns
        self.buf.clear()
        self.transport.write(data)
        self.timer = self.pool.loop.call_later(self.pool.timeout_s, self._timed_out)

    def _timed_out(self) -> None:
        self.timer = None
        if self.busy:
            self.busy = False
            self.pool.on_timeout(self)
            self._close()

    def _close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            return
        self.buf += data
        end = self.buf.find(_CRLF2)
        if end < 0:
            return
        head = bytes(self.buf[:end])
        try:
            status = int(head[9:12])
        except ValueError:
            self._fail()
            return
        body_start = end + 4
        lower = head.lower()
        if status in (204, 304) or 100 <= status < 200:
            body_len = 0
        elif b"\r\ncontent-length:" in lower:
            i = lower.index(b"\r\ncontent-length:") + 17
            j = lower.find(b"\r\n", i)
            body_len = int(lower[i:] if j < 0 else lower[i:j])
        elif b"transfer-encoding: chunked" in lower:
            term = self.buf.find(b"\r\n0\r\n\r\n", body_start - 2)
            if term < 0:
                return
            body_len = term + 7 - body_start
        else:
            self._fail()
            return
        if len(self.buf) < body_start + body_len:
            return
        body = bytes(self.buf[body_start:body_start + body_len])
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.busy = False
        keep = b"\r\nconnection: close" not in lower
        self.pool.on_response(self, status, body)
        if not keep:
            self._close()

    def _fail(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.busy = False
        self.pool.on_error(self)
        self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        was_busy = self.busy
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        self.busy = False
        if was_busy:
            self.pool.on_error(self)
        self.pool.forget(self)


class Pool:
    """Keep-alive connections; due requests wait in FIFO order when all connections are busy."""

    def __init__(self, loop: asyncio.AbstractEventLoop, host: str, port: int, stats: Stats, *,
                 timeout_s: float, max_connections: int, keep_bodies: int,
                 on_bid: Callable[[bytes], None] | None = None) -> None:
        self.on_bid = on_bid  # called with every 200 body that carries a bid (notices)
        self.loop = loop
        self.host = host
        self.port = port
        self.stats = stats
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self.keep_bodies = keep_bodies
        self.idle: list[_Conn] = []
        self.all: set[_Conn] = set()
        self.opening = 0
        self.pending: collections.deque[tuple[bytes, int, bool]] = collections.deque()
        self.outstanding = 0

    async def open(self, n: int) -> None:
        await asyncio.gather(*(self._open_one() for _ in range(n)))

    async def _open_one(self) -> None:
        self.opening += 1
        try:
            _, conn = await self.loop.create_connection(lambda: _Conn(self), self.host, self.port)
        except OSError:
            self.stats.errors += 1
            return
        finally:
            self.opening -= 1
        self.stats.connections_opened += 1
        self.all.add(conn)
        self._give(conn)

    def submit(self, data: bytes, due_ns: int, measured: bool) -> None:
        """Send now on an idle connection, else queue (FIFO); ``measured`` requests are recorded."""
        self.outstanding += 1
        if self.idle:
            self.idle.pop().send(data, due_ns, measured)
            return
        self.pending.append((data, due_ns, measured))
        if len(self.all) + self.opening < self.max_connections:
            self.loop.create_task(self._open_one())

    def _give(self, conn: _Conn) -> None:
        if conn.closed:
            return
        if self.pending:
            data, due_ns, measured = self.pending.popleft()
            conn.send(data, due_ns, measured)
        else:
            self.idle.append(conn)

    def forget(self, conn: _Conn) -> None:
        self.all.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if self.pending and len(self.all) + self.opening < self.max_connections:
            self.loop.create_task(self._open_one())

    def on_response(self, conn: _Conn, status: int, body: bytes) -> None:
        self.outstanding -= 1
        self.stats.total_responses += 1
        if self.on_bid is not None and status == 200 and b'"price"' in body:
            self.on_bid(body)
        if conn.measured:
            self.stats.latencies_us.append((time.monotonic_ns() - conn.due_ns) // 1000)
            self.stats.status[status] += 1
            if status == 200 and b'"price"' in body:
                self.stats.bids += 1
                if len(self.stats.bodies) < self.keep_bodies:
                    self.stats.bodies.append(body)
        self._give(conn)

    def on_timeout(self, conn: _Conn) -> None:
        self.outstanding -= 1
        if conn.measured:
            self.stats.timeouts += 1

    def on_error(self, conn: _Conn | None) -> None:
        self.outstanding -= 1
        if conn is None or conn.measured:
            self.stats.errors += 1


class NoticePool(Pool):
    """The notices' own connections: every response is counted by status, none is timed."""

    def on_response(self, conn: _Conn, status: int, body: bytes) -> None:
        self.outstanding -= 1
        self.stats.notice_status[status] += 1
        if not 200 <= status < 300:
            self.stats.notice_errors += 1
        self._give(conn)

    def on_timeout(self, conn: _Conn) -> None:
        self.outstanding -= 1
        self.stats.notice_errors += 1

    def on_error(self, conn: _Conn | None) -> None:
        self.outstanding -= 1
        self.stats.notice_errors += 1


def render_request(host_header: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host_header}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def run(url: str, rate: float, duration_s: float, warmup_s: float, gen: TrafficGenerator, *,
              connections: int, max_connections: int, timeout_ms: float,
              keep_bodies: int = 0, notices: LoadSettings | None = None) -> Stats:
    """Send at ``rate`` req/s for ``warmup_s + duration_s``; record only after the warm-up.
    With ``notices``, won/lost bids send their notices (module docstring)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    loop = asyncio.get_running_loop()
    stats = Stats()
    host_header = parts.netloc
    notice_pool: NoticePool | None = None
    on_bid: Callable[[bytes], None] | None = None
    if notices is not None and (notices.win_share > 0 or notices.loss_notices):
        notice_pool = NoticePool(loop, host, port, stats, timeout_s=timeout_ms / 1000.0,
                                 max_connections=max_connections, keep_bodies=0)
        rng = random.Random(7)
        settings = notices

        def on_bid(body: bytes) -> None:
            assert notice_pool is not None
            n_bids, todo = notices_for(body, settings, rng)
            stats.bids_seen += n_bids
            for notice in todo:
                stats.notices[notice.kind] += 1
                notice_pool.submit(f"GET {notice.path} HTTP/1.1\r\nHost: {host_header}\r\n\r\n".encode(),
                                   time.monotonic_ns(), False)

        await notice_pool.open(max(1, connections // 8))
    pool = Pool(loop, host, port, stats, timeout_s=timeout_ms / 1000.0,
                max_connections=max_connections, keep_bodies=keep_bodies, on_bid=on_bid)
    await pool.open(connections)
    if not pool.all:
        raise ConnectionError(f"cannot connect to {url}")
    interval_ns = int(1e9 / rate)
    total = int(rate * (warmup_s + duration_s))
    warm = int(rate * warmup_s)
    t0 = time.monotonic_ns() + 10_000_000
    i = 0
    while i < total:
        now = time.monotonic_ns()
        due = t0 + i * interval_ns
        if due > now:
            await asyncio.sleep((due - now) / 1e9)
            continue
        # Send everything that is due now; each keeps its own due time.
        while i < total and t0 + i * interval_ns <= now:
            measured = i >= warm
            s = gen.next()
            if measured:
                stats.sent += 1
                stats.send_lag_us.append((now - (t0 + i * interval_ns)) // 1000)
            pool.submit(render_request(host_header, s.path, s.headers, s.body), t0 + i * interval_ns,
                        measured)
            i += 1
        await asyncio.sleep(0)
    drain_until = time.monotonic() + timeout_ms / 1000.0 + 0.5
    while (pool.outstanding > 0 or (notice_pool is not None and notice_pool.outstanding > 0)) \
            and time.monotonic() < drain_until:
        await asyncio.sleep(0.005)
    stats.timeouts += sum(m for _, _, m in pool.pending)  # never sent: no connection came free
    for c in list(pool.all) + (list(notice_pool.all) if notice_pool is not None else []):
        c._close()
    return stats


def summarize(stats: Stats, rate: float, duration_s: float,
              within_ms: float | None = None) -> dict[str, Any]:
    """Percentiles in ms, rates as shares of requests sent during the measured window.
    ``within_ms`` (e.g. the exchange's tmax) adds ``share_within``: answers (any status) that
    arrived within it, over requests sent (timeouts and errors count as not within)."""
    lat = np.asarray(stats.latencies_us, dtype=np.float64) / 1000.0
    lag = np.asarray(stats.send_lag_us, dtype=np.float64) / 1000.0
    ok = int(lat.size)
    sent = max(stats.sent, 1)

    def pct(a: np.ndarray[Any, Any], q: float) -> float | None:
        return round(float(np.percentile(a, q)), 3) if a.size else None

    non_2xx = sum(n for code, n in stats.status.items() if code not in (200, 204))
    return {
        "target_rps": rate,
        "duration_s": duration_s,
        "sent": stats.sent,
        "responses": ok,
        "total_responses": stats.total_responses,
        "achieved_rps": round(ok / duration_s, 1),
        "p50_ms": pct(lat, 50), "p90_ms": pct(lat, 90), "p99_ms": pct(lat, 99),
        "p999_ms": pct(lat, 99.9), "max_ms": round(float(lat.max()), 3) if ok else None,
        "status": {str(k): v for k, v in sorted(stats.status.items())},
        "bids": stats.bids,
        "bid_rate": round(stats.bids / ok, 4) if ok else 0.0,
        "error_rate": round((stats.errors + non_2xx) / sent, 5),
        "timeout_rate": round(stats.timeouts / sent, 5),
        "errors": stats.errors, "timeouts": stats.timeouts, "non_2xx": non_2xx,
        "send_lag_p99_ms": pct(lag, 99),
        # The client itself sent late (its CPU was busy): results are then pessimistic.
        "client_late": bool(lag.size and float(np.percentile(lag, 99)) > 1.0),
        "connections_opened": stats.connections_opened,
        "notices": dict(stats.notices),
        "notice_status": {str(k): v for k, v in sorted(stats.notice_status.items())},
        "notice_errors": stats.notice_errors,
        "notices_per_bid": (round(sum(stats.notices.values()) / stats.bids_seen, 3)
                            if stats.bids_seen else 0.0),
        **({"within_ms": within_ms,
            "share_within": round(float((lat <= within_ms).sum()) / sent, 5)}
           if within_ms is not None else {}),
    }


def build_generator(exchanges: list[str], ids_file: str | None, seed: int | None,
                    known_share: float, gzip_share: float,
                    shapes: dict[str, float] | None = None,
                    exclude: tuple[str, ...] = ()) -> TrafficGenerator:
    mix = TrafficMix(exchanges={e: 1.0 for e in exchanges}, known_user_share=known_share,
                     gzip_share=gzip_share, seed=seed, shapes=shapes or {}, exclude=exclude)
    return TrafficGenerator.from_sources(mix, ids_file=ids_file)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--rate", type=float, required=True, help="arrivals per second")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds sent but not recorded")
    p.add_argument("--exchanges", default="openx", help="comma-separated route names")
    p.add_argument("--ids-file", default=os.environ.get("DSP_IDS_FILE"),
                   help="known user ids (JSON lines); default $DSP_IDS_FILE")
    p.add_argument("--known-share", type=float, default=0.6)
    p.add_argument("--gzip-share", type=float, default=0.0)
    p.add_argument("--shapes", default="", help="template shape weights, e.g. banner=3,video=1")
    p.add_argument("--exclude-file", default=None,
                   help="template names to leave out, one per line (TrafficMix.exclude)")
    p.add_argument("--win-share", type=float, default=0.0,
                   help="share of bids that win and send their win notice (0: no notices)")
    p.add_argument("--bill-share", type=float, default=0.9, help="share of wins also billed (burl)")
    p.add_argument("--loss-notices", action="store_true", help="lost bids fetch their lurl")
    p.add_argument("--clear-ratio", type=float, default=0.8, help="${AUCTION_PRICE} = bid × this")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--max-connections", type=int, default=256)
    p.add_argument("--timeout-ms", type=float, default=1000.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    p.add_argument("--within-ms", type=float, default=None,
                   help="also report the share of requests answered within this (e.g. tmax)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    import uvloop

    shapes = {k: float(v) for k, _, v in (w.partition("=") for w in args.shapes.split(",") if w)}
    exclude: tuple[str, ...] = ()
    if args.exclude_file:
        with open(args.exclude_file, encoding="utf-8") as f:
            exclude = tuple(line.strip() for line in f if line.strip())
    gen = build_generator(args.exchanges.split(","), args.ids_file, args.seed, args.known_share,
                          args.gzip_share, shapes, exclude)
    notices = LoadSettings(exchanges={}, shapes=shapes, ids_file=args.ids_file,
                           known_share=args.known_share, gzip_share=args.gzip_share,
                           win_share=args.win_share, bill_share=args.bill_share,
                           loss_notices=args.loss_notices, clear_ratio=args.clear_ratio)
    stats = uvloop.run(run(args.url, args.rate, args.duration, args.warmup, gen,
                           connections=args.connections, max_connections=args.max_connections,
                           timeout_ms=args.timeout_ms, notices=notices))
    summary = summarize(stats, args.rate, args.duration, args.within_ms)
    if args.json:
        print(json.dumps(summary))
    else:
        for k, v in summary.items():
            print(f"{k:>20}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
