"""Run the bidder for end-to-end tests and load tests (never on the bid path).

    with running_bidder(redis_url, tmp_path / "serve.log", workers=2) as url:
        ...  # ``dsp serve`` subprocess: every worker has bound the port and /readyz answers 200
        ...  # url.admin: its admin port (/metrics, /admin/reload), on a free port
    async with serving(build_app(settings, metrics), settings) as url:
        ...  # in this event loop, with settings.transport (front or aiohttp); url.admin is set
        ...  # when settings.admin_port is (0: a free port)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from dsp.server.settings import Settings
from dsp.testing.redis_server import free_port

REPO = Path(__file__).resolve().parent.parent.parent
#: The notice-token key of in-process bidders under test (tests sign and forge tokens with it).
TEST_TOKEN_KEYS = {"k1": b"0123456789abcdef0123456789"}


def bidder_settings(redis_url: str, configs_dir: Path | str, **over: Any) -> Settings:
    """Settings for an in-process bidder under test: the repository's models, ``TEST_TOKEN_KEYS``,
    public URL ``http://bidder.test``, no periodic config reload; ``over``
    replaces any other field (``transport``, ``health_check_s``...)."""
    fields: dict[str, Any] = {
        "redis_url": redis_url, "configs_dir": str(configs_dir), "models_dir": str(REPO / "models"),
        "public_url": "http://bidder.test", "token_keys": TEST_TOKEN_KEYS, "token_active": "k1",
        "reload_check_s": 3600}
    fields.update(over)
    return Settings(**fields)


class ServedUrl(str):
    """The bid port's base URL; ``admin`` is the admin port's (``/metrics``, ``/admin/*``), or
    ``""`` when the server has none."""

    admin: str

    def __new__(cls, url: str, admin: str = "") -> ServedUrl:
        obj = super().__new__(cls, url)
        obj.admin = admin
        return obj


def listening_sockets(port: int) -> int:
    """TCP sockets in LISTEN state on ``port`` (one per SO_REUSEPORT worker), from /proc/net/tcp."""
    n = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            n += 1
    return n


def http_ready(url: str) -> bool:
    """True when ``GET url`` answers 200 within a second."""
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@contextmanager
def running_bidder(redis_url: str, log_path: Path, *, workers: int = 1,
                   env: Mapping[str, str] | None = None, configs: Path | None = None,
                   timeout_s: float = 60.0) -> Iterator[ServedUrl]:
    """Start ``dsp serve`` on a free port (and its admin port on another); yield its base URL
    once every worker listens and /readyz is 200; terminate it (kill after 15 s) on exit.
    Start-up failure raises with the log. Several workers without ``DSP_TOKEN_KEYS`` in ``env``
    or the environment run with ``--ephemeral-token-key``."""
    port, admin_port = free_port(), free_port()
    args = [sys.executable, "-m", "dsp.cli", "serve", "--port", str(port), "--workers", str(workers),
            "--redis-url", redis_url, "--configs", str(configs or REPO / "bidder_configs"),
            "--admin-port", str(admin_port)]
    full_env = {**os.environ, **(env or {})}
    if workers > 1 and not full_env.get("DSP_TOKEN_KEYS"):
        args.append("--ephemeral-token-key")
    url = ServedUrl(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, cwd=REPO, env=full_env, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout_s
            while (listening_sockets(port) < workers or not http_ready(url + "/readyz")
                   or not http_ready(url.admin + "/metrics")):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dsp serve did not become ready (exit {proc.poll()}):\n"
                                       + log_path.read_text()[-2000:])
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@asynccontextmanager
async def serving(app: web.Application, settings: Settings) -> AsyncIterator[ServedUrl]:
    """Serve ``app`` in this event loop on a free loopback port with ``settings.transport``, the
    way ``dsp serve`` does (:class:`dsp.server.run.BidderServer`); yield the base URL."""
    from dsp.server.run import BidderServer

    server = BidderServer(app, settings)
    port = await server.start(socket.create_server(("127.0.0.1", 0)))
    try:
        yield ServedUrl(f"http://127.0.0.1:{port}", server.admin_url or "")
    finally:
        await server.stop()
