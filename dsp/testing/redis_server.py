"""Start a throwaway ``redis-server`` on a free loopback port (tests, benchmarks, demo).

    with RedisServer() as srv:
        url = srv.url            # redis://127.0.0.1:<port>/0

No persistence, no protected mode surprises; the process is killed on exit.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    def __init__(self, port: int | None = None, *, extra_args: list[str] | None = None) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server not found: install it (apt-get install redis-server)")
        self.exe = exe
        self.port = port or free_port()
        self.extra_args = extra_args or []
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="dsp-redis-")
        args = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", self._dir.name, "--protected-mode", "no",
                *self.extra_args]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not start within 10 s")

    def crash(self) -> None:
        """SIGKILL the server, keeping its directory (and port): :meth:`start` brings it back with
        whatever it had persisted (pass ``--appendonly yes --appendfsync always`` to keep all)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=10)
            self._proc = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def stop(self) -> None:
        self.crash()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def busy_script(duration_ms: int) -> str:
    """A Lua script that keeps the server busy for ``duration_ms`` (EVAL it with 0 keys): a Redis
    that answers nobody for that long, for tests of deadlines and in-flight work. DEBUG SLEEP
    would do, but Redis 7 disables DEBUG by default."""
    return f"""
local t0 = redis.call('TIME')
while true do
  local t = redis.call('TIME')
  if (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > {int(duration_ms) * 1000} then return 1 end
end
"""


def reply_int(value: object) -> int:
    """A Redis reply (bytes, str or int; never None) as an int: typed glue for tests and tools."""
    assert value is not None, "Redis returned nil"
    if isinstance(value, bytes | str | int):
        return int(value)
    raise TypeError(f"not an integer reply: {value!r}")


def reply_bytes(value: object) -> bytes:
    """A Redis reply as bytes (clients here use ``decode_responses=False``)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"not a bytes reply: {value!r}")


def reply_hash(mapping: object) -> dict[str, bytes]:
    """An HGETALL reply as ``{str field: bytes value}`` (what dsp.budget.freqcap reads)."""
    assert isinstance(mapping, dict)
    return {reply_bytes(k).decode(): reply_bytes(v) for k, v in mapping.items()}
