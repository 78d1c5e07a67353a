"""``dsp serve --workers 2``: two processes on one port, SIGHUP reload, clean SIGTERM exit."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from dsp.testing.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "tests" / "fixtures" / "configs" / "demo"


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _post(url: str, body: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_two_workers_share_the_port_and_reload(redis_url: str, tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    shutil.copytree(DEMO, configs)
    port = free_port()
    env = {**os.environ, "DSP_TOKEN_KEYS": "t1:" + "cd" * 16,
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dsp.cli", "serve", "--port", str(port), "--workers", "2",
         "--redis-url", redis_url, "--configs", str(configs), "--models", str(ROOT / "models"),
         "--log-level", "WARNING", "--admin-port", "0"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        versions: set[str] = set()
        while time.monotonic() < deadline and len(versions) < 1:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/readyz")
                if status == 200:
                    versions.add(json.loads(body)["config_version"])
            except OSError:
                time.sleep(0.2)
        assert versions, "bidder did not become ready"
        body = json.dumps({"id": "r", "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}],
                           "regs": {"coppa": 1}}).encode()
        assert _post(f"http://127.0.0.1:{port}/bid/generic", body)[0] == 204
        assert _post(f"http://127.0.0.1:{port}/bid/bidswitch", body) == (200, b'{"id":"r","nbr":7}')
        # Edit the config and SIGHUP the parent: every worker reports the new version.
        path = configs / "campaigns" / "quickloan-prime.yaml"
        path.write_text(path.read_text().replace("max_cpm: 6.00", "max_cpm: 6.50"))
        os.kill(proc.pid, signal.SIGHUP)
        old = versions.pop()
        fresh_in_a_row = 0  # SO_REUSEPORT spreads connections: 20 in a row reach both workers
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and fresh_in_a_row < 20:
            raw = _get(f"http://127.0.0.1:{port}/readyz")[1]
            fresh_in_a_row = fresh_in_a_row + 1 if json.loads(raw)["config_version"] != old else 0
            time.sleep(0.02)
        assert fresh_in_a_row >= 20, "not every worker reloaded the edited config"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == 0
